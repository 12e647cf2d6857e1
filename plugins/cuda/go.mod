module github.com/baiagent/baiagent/plugins/cuda

go 1.26.8
