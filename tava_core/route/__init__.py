"""Confidence routing: the student (+ adapter) answers the queries it is confident about, the
teacher re-encodes the rest. Signals (``signals``), calibration against the true agreement with
the teacher (``calibrate``), the router directory and its encoder (``router``), routing curves
(``curves``), drift (``drift``), and the dataset-level runs the flows call (``run``)."""
