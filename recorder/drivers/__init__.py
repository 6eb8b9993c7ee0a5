"""The recordings `cicd-audit record` runs: live on interfaces, replaying a capture
file, in the background; each puts the layers below together.
"""
