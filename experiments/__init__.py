"""The shipped experiment configs (``*.yaml``), installed with the package as ``videoclf.experiments`` so that every
command finds them by name from any folder (``--config demo``; ``videoclf init NAME`` copies one to edit)."""
