"""The single-model bridge: one provider model behind an OpenAI Chat Completions server."""
