module portcullis/go_oracle

go 1.19
