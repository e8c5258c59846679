// Logits of a token sequence under a llama.cpp model, optionally with a
// GGUF LoRA adapter applied (scale 1), as JSON rows on stdout. Built by
// tests/compat/llama_cpp_adapter.py against libllama.
//
//   lora_logits MODEL.gguf ADAPTER.gguf|- ID,ID,...
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "llama.h"

int main(int argc, char ** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s MODEL.gguf ADAPTER.gguf|- ID,ID,...\n", argv[0]);
        return 2;
    }
    std::vector<llama_token> ids;
    std::stringstream list(argv[3]);
    for (std::string item; std::getline(list, item, ',');) {
        ids.push_back(std::atoi(item.c_str()));
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        std::fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 256;
    cp.n_ubatch = 256;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    // An f32 KV cache: the default f16 one adds ~1e-2 of noise to the logits.
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (std::string(argv[2]) != "-") {
        llama_adapter_lora * lora = llama_adapter_lora_init(model, argv[2]);
        if (!lora) {
            std::fprintf(stderr, "llama.cpp refused the adapter %s\n", argv[2]);
            return 1;
        }
        float scale = 1.0f;
        if (llama_set_adapters_lora(ctx, &lora, 1, &scale) != 0) {
            std::fprintf(stderr, "cannot apply the adapter\n");
            return 1;
        }
    }
    llama_batch batch = llama_batch_init((int32_t) ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = (llama_pos) i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = (int32_t) ids.size();
    if (llama_decode(ctx, batch) != 0) {
        std::fprintf(stderr, "decode failed\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    std::printf("[");
    for (size_t i = 0; i < ids.size(); i++) {
        const float * row = llama_get_logits_ith(ctx, (int32_t) i);
        std::printf("%s[", i ? ",\n" : "");
        for (int v = 0; v < n_vocab; v++) {
            std::printf("%s%.7g", v ? "," : "", row[v]);
        }
        std::printf("]");
    }
    std::printf("]\n");
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
