"""Process control: preflight checks, the worker pools and their scheduling, stopping on signals, and the reaper
that leaves no process behind."""
