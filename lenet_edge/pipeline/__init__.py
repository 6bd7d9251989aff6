"""The whole job in one command: train -> export -> quantize -> evaluate -> bench -> report.md.

run.py runs the stages into a staging directory, report.py renders report.md from their
figures, commands.py is the `pipeline` command.
"""
