"""The foundation every job stands on: config, data, the networks, losses, checkpoint files and
the runtime (devices, precision, processes). Imports nothing else of the package."""
