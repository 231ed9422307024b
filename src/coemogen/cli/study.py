"""`coemogen study`: create, serve, analyze and simulate preference studies."""

from __future__ import annotations

import argparse


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    study = sub.add_parser("study", help="human preference studies: create, serve, analyze, simulate").add_subparsers(
        dest="study_command", required=True
    )
    p = study.add_parser("create", help="a study folder from the image folders of several methods")
    p.add_argument(
        "--methods", nargs="+", required=True, metavar="NAME=IMAGE_DIR", help="`generate --emotion all` folders"
    )
    p.add_argument("--out", required=True, help="the new study folder")
    p.add_argument("--design", choices=["paired", "pick-one"], default="paired")
    p.add_argument(
        "--questions", nargs="+", metavar="ID=TEXT", help="default: emotion and coherence ({emotion} allowed)"
    )
    p.add_argument("--trials-per-participant", type=int, default=24)
    p.add_argument("--sequences", type=int, default=64, help="participant sequences; participants take them in turn")
    p.add_argument("--repeats", type=int, default=2, help="repeated trials (sides swapped) per participant")
    p.add_argument("--gold", metavar="REAL_DIR", help="real images, REAL_DIR/<emotion>/*, for gold trials")
    p.add_argument("--gold-trials", type=int, default=2)
    p.add_argument("--images-per-emotion", type=int, help="use at most this many images of each emotion per method")
    p.add_argument("--title", default="Image study")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_study)
    p = study.add_parser("serve", help="the participants' page (any browser, phones included)")
    p.add_argument("study")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the study to the network")
    p.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    p.add_argument("--database", help="sqlite:///PATH or postgresql://... (default: STUDY/answers.sqlite)")
    p.set_defaults(func=run_study)
    p = study.add_parser("analyze", help="exclusions, preference statistics, agreement; a report with plots")
    p.add_argument("study")
    p.add_argument("--out", required=True)
    p.add_argument("--database", help="as for serve")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_study)
    p = study.add_parser("simulate", help="simulated participants answering from the world's judges")
    p.add_argument("study")
    p.add_argument("--participants", type=int, required=True)
    p.add_argument("--database", help="as for serve")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_study)


def run_study(a: argparse.Namespace) -> None:
    if a.study_command == "create":
        from ..study.design import create_study, parse_methods, parse_questions

        study = create_study(
            parse_methods(a.methods),
            a.out,
            a.design,
            parse_questions(a.questions),
            a.trials_per_participant,
            a.sequences,
            a.repeats,
            a.gold,
            a.gold_trials,
            a.images_per_emotion,
            a.seed,
            a.title,
        )
        steps = len(study.sequences[0])
        print(f"wrote study {study.id} ({len(study.trials)} trials, {steps} screens per participant) to {a.out}")
    elif a.study_command == "serve":
        from ..study.server import serve

        serve(a.study, a.host, a.port, a.database)
    elif a.study_command == "analyze":
        from ..study.analysis import analyze

        results = analyze(a.study, a.out, a.database, a.resamples, a.seed)
        print(f"{results['included']} of {results['participants']} participants included; report in {a.out}")
    else:
        from ..study.simulate import simulate

        stored = simulate(a.study, a.participants, a.seed, a.database)
        print(f"stored {stored} simulated answers")
