"""ccyclegan: change the facial expression of a face to a chosen emotion (CCycleGAN)."""

from ccyclegan.config import Config
from ccyclegan.data import EMOTIONS

__all__ = ["Config", "EMOTIONS", "__version__"]
__version__ = "0.1.0"
