/* rv-model-files.h: diffusers / transformers model folders, all in one
 * include: configs (rv-config.h), weights checked against them
 * (rv-weight-files.h), model folders and model sets (rv-model-set.h). */
#pragma once

#include "rv-config.h"
#include "rv-weight-files.h"
#include "rv-model-set.h"
