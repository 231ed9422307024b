"""Errors raised for bad user input, so the CLI can print them without a traceback."""


class CoEmoGenError(Exception):
    """A problem with user input (names, files, arguments) described in plain words."""
