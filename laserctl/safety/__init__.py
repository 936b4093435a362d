"""Safety rules that do not depend on the state machine: interlocks, limits, the energy monitor.

Everything here is pure: no I/O, no clock, no threads. The controller (laserctl.controller)
applies these rules; docs/controller.md lists them with their numbers and reasons.
"""
