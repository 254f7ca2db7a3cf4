import os

# JAX on CPU: keep tests deterministic and quiet, and share compiled programs between the test
# process and the CLI subprocesses it starts (the engine's persistent compilation cache).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
