"""SecondLook core: data, preprocessing, networks, training, inference, metrics, explanation.

Never imports Streamlit, so every piece can be used from the CLI, tests and the app alike.
"""
