"""Tables, figures and the machine-readable summary of the study."""
