"""Reading other tools' experiment files into provenance records and metrics.

Owns the Compress and Compare experiment format (:mod:`.cnc_json`). Imports only
:mod:`cnc_widgets.provenance`; the registry turns what it reads into models.
"""
