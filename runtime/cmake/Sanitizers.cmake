# SPDX-License-Identifier: Apache-2.0
# MOONSTACK_SANITIZE=ON builds everything with ASan + UBSan (no recovery: any report fails).
if(MOONSTACK_SANITIZE)
  set(_san -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_compile_options(${_san})
  add_link_options(${_san})
endif()
