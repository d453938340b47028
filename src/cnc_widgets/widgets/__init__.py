"""The notebook views. They import the core; the core never imports them."""

from .provenance import ProvenanceGraph, show_provenance

__all__ = ["ProvenanceGraph", "show_provenance"]
