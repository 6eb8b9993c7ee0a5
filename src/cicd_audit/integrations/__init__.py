"""Hook scripts and snippets for CI platforms, installed by `cicd-audit job install-hooks`."""
