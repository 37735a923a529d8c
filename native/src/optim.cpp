// The C ABI of the per-tensor optimizer kernels (optim.h): bitsandbytes' dynamic maps, blockwise 8-bit
// quantization, and AdamW over one tensor with fp32 or 8-bit moments. Not the model-wide fp32 AdamW
// (pt_adamw_step, decoder.cpp), which runs the same fp32 kernel.
#include "preftune.h"
#include "optim.h"

using namespace pt;

extern "C" {

void pt_dynamic_map(int32_t is_signed, float* out) {
  const DynamicMap& q = dynamic_map(is_signed != 0);
  for (int i = 0; i < 256; i++) out[i] = q.code[i];
}

void pt_quantize_blockwise(const float* x, int64_t n, int32_t is_signed, uint8_t* codes, float* absmax) {
  quantize_blockwise(x, n, dynamic_map(is_signed != 0), codes, absmax);
}

void pt_dequantize_blockwise(const uint8_t* codes, const float* absmax, int64_t n, int32_t is_signed, float* out) {
  dequantize_blockwise(codes, absmax, n, dynamic_map(is_signed != 0), out);
}

void pt_adamw_tensor(float* p, const float* g, float* exp_avg, float* exp_avg_sq, int64_t n, int64_t step, float lr,
                     float beta1, float beta2, float eps, float weight_decay) {
  adamw_tensor(p, g, exp_avg, exp_avg_sq, n, AdamWStep(step, lr, beta1, beta2, eps, weight_decay));
}

void pt_adamw8bit_tensor(float* p, const float* g, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                         int64_t n, int64_t step, float lr, float beta1, float beta2, float eps, float weight_decay) {
  adamw8bit_tensor(p, g, state1, state2, absmax1, absmax2, n, AdamWStep(step, lr, beta1, beta2, eps, weight_decay));
}

}  // extern "C"
