"""FVG-PT library: datasets, masks, CLIP backbones, feature cache, heads.

Pure functions and classes; nothing here reads params.yaml (the `stages`
package does that and calls into this library).
"""

__version__ = "0.1.0"
