"""cnc_widgets."""
