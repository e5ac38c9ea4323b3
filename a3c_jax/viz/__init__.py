"""Pictures: learning curves of run folders (`plotting`, `curves`) and videos of a policy
(`video`)."""
