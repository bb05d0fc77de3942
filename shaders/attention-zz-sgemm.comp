// Example kernel behind the figures in LAVAPIPE.md (a measurement kernel, not production code).
// Fastest variant there: glslc -fshader-stage=compute --target-env=vulkan1.2 -DTX=8 -DTY=8 -DTM=4 -DTN=16 -DTEXBUF -DINTERLEAVE
// (26.5 GFLOP/s at 1024^3 on the 2-core machine). Assumes M % (TY*TM) == 0, N % (TX*TN) == 0, K % 32 == 0;
// no bounds handling, row-major A (MxK), B (KxN), C (MxN); A and B bound as RGBA32F/RGBA16F uniform texel buffers.
#version 450
// Register-tiled SGEMM for llvmpipe/lavapipe (subgroup size 8, SIMD lanes = invocations).
// No shared memory, no barriers. Each invocation computes TM rows x TN cols of C.
// A is loaded once per 8 k-steps per lane (lane l loads k0+l) and shared across the
// subgroup with subgroupBroadcast (all lanes of a subgroup have the same rows).
// -DTX (multiple of 8) -DTY -DTM -DTN ; -DVEC4B: B read as vec4 (TN % 4 == 0)
// -DTEXBUF: A and B are samplerBuffers (RGBA32F or RGBA16F views), vec4 fetches.
// -DFP16: SSBO A/B are float16_t (f32 accumulate).
// -DINTERLEAVE (TEXBUF only): lane tx owns vec4 column groups j*TX+tx (lane-contiguous fetches).
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
#extension GL_EXT_control_flow_attributes : require
#ifdef FP16
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define ETYPE float16_t
#define VTYPE f16vec4
#else
#define ETYPE float
#define VTYPE vec4
#endif
#define SG 8
#define BM (TY * TM)
#define BN (TX * TN)
layout(local_size_x = TX, local_size_y = TY) in;
#ifdef TEXBUF
layout(binding = 0) uniform samplerBuffer A4;
layout(binding = 1) uniform samplerBuffer B4;
#else
layout(std430, binding = 0) readonly buffer BA { ETYPE A[]; };
#ifdef VEC4B
layout(std430, binding = 1) readonly buffer BB { VTYPE B4[]; };
#else
layout(std430, binding = 1) readonly buffer BB { ETYPE B[]; };
#endif
#endif
layout(std430, binding = 2) writeonly buffer BC { float C[]; };
layout(push_constant) uniform PC { uint M, N, K, aoff, boff; };

void main() {
    uint lane = gl_SubgroupInvocationID;
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint row0 = gl_WorkGroupID.y * BM + ty * TM;
#ifdef INTERLEAVE
    uint colw = gl_WorkGroupID.x * BN;
#define COL(j) (colw + ((j) / 4 * TX + tx) * 4 + (j) % 4)
#else
    uint col0 = gl_WorkGroupID.x * BN + tx * TN;
#define COL(j) (col0 + (j))
#endif
    float acc[TM][TN];
    [[unroll]] for (int i = 0; i < TM; i++) [[unroll]] for (int j = 0; j < TN; j++) acc[i][j] = 0.0;
#ifdef TEXBUF
    // per lane: 4 consecutive k of each of the TM rows -> covers 32 k per subgroup
    for (uint k0 = 0; k0 < K; k0 += 4 * SG) {
        vec4 al[TM];
        [[unroll]] for (int i = 0; i < TM; i++) al[i] = texelFetch(A4, int(aoff + ((row0 + i) * K + k0) / 4 + lane));
        [[unroll]] for (int kk = 0; kk < 4 * SG; kk++) {
            float b[TN];
            [[unroll]] for (int j = 0; j < TN / 4; j++) {
                vec4 v = texelFetch(B4, int(boff + ((k0 + kk) * N + COL(4 * j)) / 4));
                b[4 * j] = v.x; b[4 * j + 1] = v.y; b[4 * j + 2] = v.z; b[4 * j + 3] = v.w;
            }
            [[unroll]] for (int i = 0; i < TM; i++) {
                float a = subgroupBroadcast(al[i][kk % 4], kk / 4);
                [[unroll]] for (int j = 0; j < TN; j++) acc[i][j] = fma(a, b[j], acc[i][j]);
            }
        }
    }
#else
    for (uint k0 = 0; k0 < K; k0 += SG) {
        float al[TM];
        [[unroll]] for (int i = 0; i < TM; i++) al[i] = float(A[(row0 + i) * K + k0 + lane]);
        [[unroll]] for (int kk = 0; kk < SG; kk++) {
            float b[TN];
#ifdef VEC4B
            [[unroll]] for (int j = 0; j < TN / 4; j++) {
                vec4 v = vec4(B4[((k0 + kk) * N + col0) / 4 + j]);
                b[4 * j] = v.x; b[4 * j + 1] = v.y; b[4 * j + 2] = v.z; b[4 * j + 3] = v.w;
            }
#else
            [[unroll]] for (int j = 0; j < TN; j++) b[j] = float(B[(k0 + kk) * N + col0 + j]);
#endif
            [[unroll]] for (int i = 0; i < TM; i++) {
                float a = subgroupBroadcast(al[i], kk);
                [[unroll]] for (int j = 0; j < TN; j++) acc[i][j] = fma(a, b[j], acc[i][j]);
            }
        }
    }
#endif
    [[unroll]] for (int i = 0; i < TM; i++) [[unroll]] for (int j = 0; j < TN; j++)
        C[(row0 + i) * N + COL(j)] = acc[i][j];
}
