/* rv-fault.c: fault injection. These are test hooks, not settings: they stay
 * in the shipped engine so that the tests exercise the very binaries users
 * run, and they do nothing unless their variable is set. Every one lives in
 * this file.
 *
 *   REVERIE_FAULT_ALLOC=N | STAGE:N
 *     Simulates the device running out of memory: the N-th tensor
 *     allocation fails (rv_tensor_new, rv-memory.c) with RV_ERROR_OUT_OF_MEMORY
 *     and a message that says the fault was injected, as a failed
 *     vkAllocateMemory would.
 *
 *   REVERIE_FAULT_DEVICE_LOST=N | STAGE:N
 *     Simulates a lost device (VK_ERROR_DEVICE_LOST): the N-th submit of a
 *     command stream (rv-cmd.c) is dropped and reported lost, and the device
 *     stays lost from then on, as a real one does; the engine must open a
 *     new device for the next job.
 *
 * Syntax: N (a positive decimal) counts every allocation or submit of the
 * process; STAGE:N counts only those made while a job is in STAGE, one of
 * load, text, prior, encode, decoder, decode (the jobs name their stage with
 * rv_device_fault_stage()). Each fault fires once per process; unset, empty,
 * 0 or unparsable values inject nothing.
 *
 * Driven by tests/hardening/test-faults.py: every stage × both faults
 * through `reverie-cli generate|edit` (exit status 1, a clear message,
 * nothing written) and through `reverie-cli serve` (the API's error shape,
 * 507 or 503, and the next request's image identical to a fault-free
 * server's). */
#include "rv-fault.h"

#include <string.h>

typedef struct {
  const char *env;
  gboolean    parsed;
  char        stage[16];
  gint64      at, count;
  gboolean    fired;
} RvFault;

static RvFault faults[] = {
  [RV_FAULT_ALLOC] = { .env = "REVERIE_FAULT_ALLOC" },
  [RV_FAULT_DEVICE_LOST] = { .env = "REVERIE_FAULT_DEVICE_LOST" },
};
static char fault_stage[16];
static GMutex fault_lock;

static void
fault_parse (RvFault *f)
{
  f->parsed = TRUE;
  const char *s = g_getenv (f->env);
  if (s == NULL)
    return;
  const char *colon = strchr (s, ':');
  if (colon != NULL && (gsize) (colon - s) < sizeof f->stage)
    {
      memcpy (f->stage, s, colon - s);
      f->stage[colon - s] = '\0';
      s = colon + 1;
    }
  f->at = g_ascii_strtoll (s, NULL, 10);
}

gboolean
_rv_fault_injected (RvFaultKind kind)
{
  RvFault *f = &faults[kind];
  gboolean fire = FALSE;
  g_mutex_lock (&fault_lock);
  if (!f->parsed)
    fault_parse (f);
  if (f->at > 0 && !f->fired && (f->stage[0] == '\0' || strcmp (f->stage, fault_stage) == 0))
    fire = f->fired = ++f->count == f->at;
  g_mutex_unlock (&fault_lock);
  return fire;
}

void
rv_device_fault_stage (const char *stage)
{
  g_mutex_lock (&fault_lock);
  g_strlcpy (fault_stage, stage ? stage : "", sizeof fault_stage);
  g_mutex_unlock (&fault_lock);
}
