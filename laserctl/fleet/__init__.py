"""The clinic chain (issue 14): consoles push their shot logs to a central store; the course
rules ask it before a session starts (courses.py). See docs/fleet.md."""
