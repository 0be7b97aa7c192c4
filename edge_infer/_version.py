"""The edge_infer version: a leaf module, so any module can import it without importing the
package root (whose lazy attributes import the engine)."""

__version__ = "0.1.0"
