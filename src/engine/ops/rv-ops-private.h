/* rv-ops-private.h: helpers shared by the op implementations. */
#pragma once

#include "rv-ops.h"

G_BEGIN_DECLS

/* The kernel, or NULL with the error recorded on the stream. */
RvKernel *_rv_op_kernel (RvCmd *cmd, const char *module, const char *bindings,
                         const guint32 *spec, guint n_spec);

/* Workgroup counts covering n invocations of `local` threads in a 1-d
 * index space that may exceed the x limit: index = (gy·gx + gx_id)·local + lid. */
void      _rv_grid_1d (RvCmd *cmd, gint64 n, guint local, guint32 *gx, guint32 *gy);

/* Records "op: message" as an invalid-argument error; returns FALSE. */
gboolean  _rv_op_invalid (RvCmd *cmd, const char *op, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

/* Checks shared by most ops: tensors on cmd's device, no earlier error.
 * Returns FALSE (quietly) when recording should be skipped. */
gboolean  _rv_op_begin (RvCmd *cmd);

/* Size of dims [from, to) */
gint64    _rv_dims (const RvTensor *t, int from, int to);

/* Attention kernels. AUTO picks per device; tests force each variant so both
 * run on any device (a forced variant still falls back where it cannot run
 * the shape, e.g. SUBGROUP with a head dim that is not a multiple of 4). */
typedef enum {
  RV_ATTENTION_AUTO,
  RV_ATTENTION_SUBGROUP,   /* texel buffers + subgroup broadcast: CPU drivers */
  RV_ATTENTION_TILED,      /* shared-memory tiles: GPUs */
} RvAttentionVariant;

void      _rv_attention_force_variant (RvAttentionVariant variant);

/* GEMM kernels (linear, matmul, conv2d). AUTO picks per device; tests force
 * a variant so the CPU and tiled kernels both run on lavapipe (forcing
 * COOPMAT on a device without it records an error on the stream). */
typedef enum {
  RV_GEMM_AUTO,
  RV_GEMM_CPU,        /* register tiles over texel buffers: CPU drivers */
  RV_GEMM_TILED,      /* shared-memory tiles: GPUs */
  RV_GEMM_COOPMAT,    /* VK_NV_cooperative_matrix, f16 weights only */
} RvGemmVariant;

void      _rv_gemm_force_variant (RvGemmVariant variant);
/* The CPU kernel's register tiles: how many, each one's module name, and
 * forcing one (-1: chosen by shape). */
guint       _rv_gemm_cpu_tile_count (void);
const char *_rv_gemm_cpu_tile_name (guint index);
void        _rv_gemm_force_cpu_tile (int index);
/* rv_op_linear_group: TRUE makes it run each part on its own, as it does
 * when the weights lie in different memory blocks (tests). */
void        _rv_gemm_force_group_split (gboolean split);
/* Runs a small linear and conv2d through `variant` and through the tiled
 * kernel and compares them; FALSE with `error` set when they disagree. */
gboolean  _rv_gemm_self_check (RvDevice *dev, RvGemmVariant variant, GError **error);

/* 3×3 stride-1 convolutions as Winograd F(4×4, 3×3) or F(2×2, 3×3)
 * (rv-ops-winograd.c). AUTO picks one where it measured faster with the CPU
 * kernel; ON and ON_F2 use that one wherever the shape allows (tests), OFF
 * never. chunk_bytes (0: the default) caps each
 * scratch tensor, so tests can cover the runs of tiles and channel slices. */
typedef enum {
  RV_WINOGRAD_AUTO,
  RV_WINOGRAD_OFF,
  RV_WINOGRAD_ON,      /* F(4×4, 3×3) */
  RV_WINOGRAD_ON_F2,   /* F(2×2, 3×3) */
} RvWinogradMode;

void      _rv_winograd_force (RvWinogradMode mode, gsize chunk_bytes);
/* Records a checked conv2d as Winograd where it applies (cpu_kernel: the GEMM
 * would run on the CPU kernel) and returns TRUE; FALSE, recording nothing,
 * where the direct kernel is the one to use. */
gboolean  _rv_winograd_conv2d (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
                               const RvTensor *bias, const RvConv2d *p,
                               const RvTensor *residual, gboolean cpu_kernel);

G_END_DECLS
