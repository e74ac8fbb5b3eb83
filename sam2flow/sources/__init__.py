"""Where videos come from beyond one file: archives (folders and buckets), live streams and watched folders, and
sweeps (one video under a grid of settings)."""
