"""`coemogen study`: human preference studies, created from generated image folders, served to
participants' browsers, and analysed (see docs/study/).

- `design.py`: the study folder (images, trials, participant sequences), decided from a seed.
- `store.py`: answers in SQLite (WAL) or PostgreSQL through SQLAlchemy.
- `server.py`: the participant page and its JSON API.
- `analysis.py`: exclusions, preference rates, vote shares, Bradley-Terry, agreement, the report.
- `simulate.py`: simulated participants answering from the synthetic world's judges.
"""
