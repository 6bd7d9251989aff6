"""`python -m lenet_edge`: the same program as `lenet-edge`."""

from .entry import main

main()
