# A random Llama-2-7B-shaped checkpoint (hidden 4096, intermediate 11008, 32 layers, 32 heads, fp16),
# generated on the GPU; the tokenizer (vocab 4096) is borrowed from a small model folder.
# python3 bench/make_llama7b.py <out> <folder with tokenizer.json>
import json, os, shutil, sys, torch
from safetensors.torch import save_file
out, tok = sys.argv[1], sys.argv[2]
if os.path.exists(os.path.join(out, "model.safetensors.index.json")): sys.exit(0)
os.makedirs(out, exist_ok=True)
H, I, V = 4096, 11008, 4096
L = int(os.environ.get("LAYERS", "32"))
g = torch.Generator(device="cuda").manual_seed(0)
def r(*s, std=0.02): return (torch.randn(*s, generator=g, device="cuda") * std).half().cpu()
def ones(n): return (1 + torch.randn(n, generator=g, device="cuda") * 0.05).half().cpu()
wm, shard = {}, {}
def flush(i):
    name = f"model-{i:05d}.safetensors"
    save_file(shard, os.path.join(out, name)); wm.update({k: name for k in shard}); shard.clear()
shard.update({"model.embed_tokens.weight": r(V, H, std=1.0), "model.norm.weight": ones(H), "lm_head.weight": r(V, H)})
for l in range(L):
    p = f"model.layers.{l}."
    shard.update({p + "input_layernorm.weight": ones(H), p + "post_attention_layernorm.weight": ones(H),
                  p + "self_attn.q_proj.weight": r(H, H), p + "self_attn.k_proj.weight": r(H, H), p + "self_attn.v_proj.weight": r(H, H),
                  p + "self_attn.o_proj.weight": r(H, H), p + "mlp.gate_proj.weight": r(I, H), p + "mlp.up_proj.weight": r(I, H), p + "mlp.down_proj.weight": r(H, I)})
    if l % 4 == 3: flush(l // 4 + 1)
if shard: flush(99)
json.dump({"weight_map": wm, "metadata": {}}, open(os.path.join(out, "model.safetensors.index.json"), "w"))
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L,
           "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": V, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float16", "bos_token_id": 1, "eos_token_id": 2}, open(os.path.join(out, "config.json"), "w"))
for f in ["tokenizer.json", "tokenizer_config.json"]: shutil.copy(os.path.join(tok, f), out)
print("wrote", out)
