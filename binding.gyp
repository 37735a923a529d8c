{
  "variables": {
    "have_dnnl%": "<!(test -e /usr/include/oneapi/dnnl/dnnl.hpp && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "preftune",
      "sources": [
        "native/binding/addon.cc",
        "native/src/bf16.cpp",
        "native/src/decoder.cpp",
        "native/src/gradcheck.cpp",
        "native/src/optim.cpp",
        "native/src/mpi.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/include",
        "native/src"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"
      ],
      "cflags_cc!": [
        "-fno-exceptions",
        "-O3"
      ],
      "cflags_cc": [
        "-O3",
        "-march=native",
        "-fopenmp",
        "-std=c++17",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-Wall",
        "-Wno-unused-parameter"
      ],
      "libraries": [
        "-L/usr/lib/x86_64-linux-gnu/openblas-openmp",
        "-Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp",
        "-lopenblas",
        "-fopenmp",
        "-ldl"
      ],
      "conditions": [
        [
          "have_dnnl==1",
          {
            "defines": ["PT_HAVE_DNNL"],
            "libraries": ["-ldnnl"]
          }
        ]
      ]
    }
  ]
}