package wiremsg

// DecodePickledExt lets the external tests fuzz the pickle reader alone.
var DecodePickledExt = decodePickledExt
