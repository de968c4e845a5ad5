"""hello: the smallest copy-mode pipeline (no model, no key). Its project files ship under project/."""
