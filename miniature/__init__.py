"""
The CPU miniature's own code (the recipe itself is the repo's top level): world.py writes a synthetic math world
whose corpora, RL prompts and held-out set miniature.sh runs the recipe on, and report.py turns the runs into
out/miniature/report.md. Run them from the repo root as modules: `python -m miniature.world`, `python -m
miniature.report`.
"""
