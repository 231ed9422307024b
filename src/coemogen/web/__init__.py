"""The CoEmoGen web app (`coemogen web`): a Gradio page on a run, loaded once and kept warm.

`limits.py` holds what one request may ask for and the server-side checks of every form value;
`batching.py` the one model copy serving concurrent requests in batched passes; `app.py` the
request handler and the page itself. Gradio is an extra:
`pip install "coemogen[web]"`.
"""

from .app import CoEmoGenWebApp, launch
from .limits import GenerationRequest, WebLimits

__all__ = ["CoEmoGenWebApp", "GenerationRequest", "WebLimits", "launch"]
