"""The KerasTuner search: hypermodel (what to build), tuner (how trials run and are tracked), run (the job)."""
