"""Notebook verbs: the helpers the lessons in ``notebooks/`` call (plots, views, steppers,
exercise checks).  Importing this package imports nothing heavy."""
