"""The console's screens: connect, patient and profile, treatment, report, service."""
