module github.com/baiagent/baiagent/plugins/tpu

go 1.26.8
