import streamlit as st

st.title("Versions")
st.info("This page is being built.")
