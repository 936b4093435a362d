"""The operator console (`laserctl console`): a Textual terminal interface beside the controller.

The controller runs on its own thread (laserctl.controller.runner); the console only shows the
immutable snapshots it publishes and sends it operator commands. Nothing here decides what is
safe: the controller does. Modules that import textual (app.py, screens/, widgets.py,
screenshots.py) are imported only by `laserctl console`, so `laserctl --help` stays fast; the
others (bridge, guidance, clinic, treatment, discovery) have no UI and are tested without one.

See docs/operator-guide.md.
"""
