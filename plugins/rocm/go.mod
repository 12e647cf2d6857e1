module github.com/baiagent/baiagent/plugins/rocm

go 1.26.8
