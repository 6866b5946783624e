module github.com/ringtrain/ringtrain

go 1.26.0
