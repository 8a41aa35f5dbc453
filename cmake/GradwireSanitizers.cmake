# GRADWIRE_SANITIZE=address,undefined instruments the host code of every target (CUDA device
# code is left alone). UBSan is made fatal so a test cannot pass over undefined behaviour.
set(GRADWIRE_SANITIZE "" CACHE STRING "Comma-separated -fsanitize= list, e.g. address,undefined")
if(GRADWIRE_SANITIZE)
  add_compile_options(
    "$<$<COMPILE_LANGUAGE:C,CXX>:-fsanitize=${GRADWIRE_SANITIZE};-fno-omit-frame-pointer;-fno-sanitize-recover=all>")
  add_link_options(-fsanitize=${GRADWIRE_SANITIZE})
endif()
