-- The bench's request (../shared/bench/post.lua, loaded as is) plus the accessing user
-- the block-check policy needs. nginx and the pure relay ignore these headers.
dofile("../shared/bench/post.lua")
wrk.headers["x-rtp-actor-employee-hsaid"] = "SE2321000016-E001"
wrk.headers["x-rtp-actor-careunit-hsaid"] = "SE2321000016-15CQ"
wrk.headers["x-rtp-actor-careprovider-hsaid"] = "SE2321000016-0001"
