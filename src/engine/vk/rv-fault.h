/* rv-fault.h: fault injection, the test hooks that stay in shipped binaries.
 * Engine-private. rv-fault.c documents every variable, its syntax, what it
 * simulates and which tests drive it. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  RV_FAULT_ALLOC,          /* REVERIE_FAULT_ALLOC: a tensor allocation runs out of memory */
  RV_FAULT_DEVICE_LOST,    /* REVERIE_FAULT_DEVICE_LOST: a submit loses the device */
} RvFaultKind;

/* TRUE when this allocation or submit is the one to fail (each fault fires
 * at most once per process). Called by rv-memory.c and rv-cmd.c. */
gboolean _rv_fault_injected (RvFaultKind kind);

/* The stage of the job now running, for the STAGE:N form of the variables
 * ("" = none): load, text, prior, encode, decoder, decode. Called by the
 * jobs as they enter each stage. */
void     rv_device_fault_stage (const char *stage);

G_END_DECLS
