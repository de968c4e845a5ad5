from pocketguide.cli import entrypoint

entrypoint()
