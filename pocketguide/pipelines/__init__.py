"""Built-in pipelines, each a plugin package plus its project files (stages.yaml, templates, data).
The engine learns about them only through the registries, like any user's plugin."""
