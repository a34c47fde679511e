// preloaded before every test file (bunfig.toml): fresh outputs are poisoned with NaN in every backend
process.env.GPTQ_POISON = "1";
process.env.GPTQ_QUIET ??= "1";
