{
  "targets": [
    {
      "target_name": "interlock",
      "sources": ["native/addon.cc"],
      "actions": [
        {
          "action_name": "bpf_skeleton",
          "inputs": ["bpf/interlock.bpf.c", "bpf/interlock.h", "bpf/build.sh"],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/bpf/interlock.skel.h"],
          "action": ["sh", "bpf/build.sh", "<(SHARED_INTERMEDIATE_DIR)/bpf"]
        }
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(SHARED_INTERMEDIATE_DIR)/bpf",
        "bpf"
      ],
      "libraries": ["-lbpf", "-lelf", "-lz"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
