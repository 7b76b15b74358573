rule prepare_data:
    output:
        data="results/data/{dataset}.pt",
        info="results/data/{dataset}.json",
    log:
        "results/logs/prepare_data/{dataset}.log",
    params:
        options=get_data_options,
    conda:
        TORCH_ENV
    script:
        "../scripts/prepare_data.py"
