// Tests that take minutes under ASan + UBSan (quantizing whole models to every type, CLI runs
// over the golden text) while seconds in Release: scripts/test.sh runs its sanitizer pass with
// MESHLM_SKIP_HEAVY=1 and they skip there, saying so. The unit tests of the same code run there.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>

#define MESHLM_SKIP_IF_HEAVY_OFF()                                                 \
  do {                                                                             \
    if (std::getenv("MESHLM_SKIP_HEAVY"))                                          \
      GTEST_SKIP() << "heavy under sanitizers: MESHLM_SKIP_HEAVY is set (unset it " \
                      "to run)";                                                   \
  } while (0)
