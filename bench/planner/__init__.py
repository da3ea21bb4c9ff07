"""The cost planner (`python -m bench plan`): the work of a grid counted from its cells and data, priced with
throughputs measured on this device (`--calibrate`) or stored from an earlier calibration."""
